"""Forms of the sandbox utility portal and the third party's dashboard (Flask-WTF:
every form carries a CSRF token)."""
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
    widgets,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, Regexp

from ..lookup import LOOKUP_LABELS
from .delivery import RESULTS
from .lifecycle import EVENT_TYPES


class LookupForm(FlaskForm):
    method = RadioField("Find my account by", default="phone",
                        choices=[SelectChoice(v, label) for v, label in LOOKUP_LABELS.items()],
                        validators=[DataRequired()])
    value = StringField("Phone number, email, billing address or account number",
                        validators=[DataRequired(message="Enter how we can find your account."),
                                    Length(max=300)])
    submit = SubmitField("Find my account")


class OtpForm(FlaskForm):
    code = StringField("Passcode", validators=[
        DataRequired(message="Enter the 6-digit passcode."),
        Regexp(r"^\s*\d{3}\s?\d{3}\s*$", message="The passcode is 6 digits."),
    ])
    submit = SubmitField("Continue")


class ResendForm(FlaskForm):
    submit = SubmitField("Send a new passcode")


class OutboxFilterForm(FlaskForm):
    """The outbox's filters: a GET form (read-only, so no CSRF token), bound to the query
    string so ``/outbox?to=<contact>`` works as a link. Scenario choices come from the view."""

    class Meta:
        csrf = False

    channel = SelectField("Channel", choices=[SelectChoice("", "Any"), SelectChoice("email", "Email"),
                                              SelectChoice("sms", "SMS")], default="")
    to = StringField("To", validators=[Optional(), Length(max=320, message="That is too long to be a contact.")])
    scenario = SelectField("Scenario", default="")
    result = SelectField("Result", default="",
                         choices=[SelectChoice("", "Any")] + [SelectChoice(k, v) for k, v in RESULTS.items()])
    mine = BooleanField("Only this browser's messages")


class ConsentForm(FlaskForm):
    history = SelectField("Past data to share", coerce=int)
    end = SelectField("Share until", coerce=int)
    meters = SelectMultipleField("Meters to share", widget=widgets.ListWidget(prefix_label=False),
                                 option_widget=widgets.CheckboxInput())
    authorize = SubmitField("Authorize")
    decline = SubmitField("Decline")


class ActionForm(FlaskForm):
    """A button that changes something (revoke, rotate, expire, delete, sign out): only
    the CSRF token travels, the rest is in the URL."""

    submit = SubmitField("Confirm")


# ---- the third party's dashboard ------------------------------------------------------------

class SignInForm(FlaskForm):
    client_id = StringField("client_id", validators=[DataRequired(message="Enter your client_id."),
                                                     Length(max=64)])
    client_secret = PasswordField("client_secret", validators=[
        DataRequired(message="Enter your client_secret."), Length(max=256)])
    submit = SubmitField("Sign in")


class RedirectUrisForm(FlaskForm):
    redirect_uris = TextAreaField("Redirect URIs, one per line", validators=[Length(max=50_000)])
    submit = SubmitField("Save redirect URIs")


class ApiTokenForm(FlaskForm):
    name = StringField("Name", validators=[Optional(), Length(max=200)])
    submit = SubmitField("Create API token")


class WebhookForm(FlaskForm):
    url = StringField("Endpoint URL", validators=[DataRequired(message="Enter the URL that receives events."),
                                                  Length(max=2000)])
    event_types = SelectMultipleField("Only these event types (none ticked: every type)",
                                      choices=[SelectChoice(t, t) for t in EVENT_TYPES],
                                      widget=widgets.ListWidget(prefix_label=False),
                                      option_widget=widgets.CheckboxInput())
    submit = SubmitField("Add endpoint")
