"""Forms of the sandbox utility portal (Flask-WTF: every form carries a CSRF token)."""
from flask_wtf import FlaskForm
from wtforms import RadioField, SelectField, SelectMultipleField, StringField, SubmitField, widgets
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Regexp

from ..lookup import LOOKUP_LABELS


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


class ConsentForm(FlaskForm):
    history = SelectField("Past data to share", coerce=int)
    end = SelectField("Share until", coerce=int)
    meters = SelectMultipleField("Meters to share", widget=widgets.ListWidget(prefix_label=False),
                                 option_widget=widgets.CheckboxInput())
    authorize = SubmitField("Authorize")
    decline = SubmitField("Decline")
