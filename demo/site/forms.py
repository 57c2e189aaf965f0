"""Forms of the demo site (Flask-WTF: every form carries a CSRF token)."""
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    URLField,
    widgets,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import URL, DataRequired, Length, Optional

from ..config import TOKEN_AUTH_METHODS
from ..scope import REQUESTABLE_FUNCTION_BLOCKS

LOOKUP_CHOICES = [SelectChoice(v, label) for v, label in (
    ("none", "None"), ("account", "Account"), ("phone", "Phone"), ("email", "Email"), ("address", "Address"))]
HISTORY_CHOICES = [SelectChoice(v, label) for v, label in (
    ("", "Utility default (2 years)"), ("31536000", "1 year"), ("63072000", "2 years"),
    ("94608000", "3 years"), ("15552000", "6 months"), ("0", "None"))]


class MultiCheckboxField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class ConnectForm(FlaskForm):
    lookup_type = RadioField("Look the customer up by", choices=LOOKUP_CHOICES, default="none")
    lookup_value = StringField("Lookup value", validators=[Optional(), Length(max=300)])
    function_blocks = MultiCheckboxField(
        "Function blocks", coerce=int,
        choices=[SelectChoice(fb, f"{fb} · {text}") for fb, text in REQUESTABLE_FUNCTION_BLOCKS.items()])
    history = SelectField("History length", choices=HISTORY_CHOICES, default="")
    end_date = DateField("Authorization end date", validators=[Optional()])
    noedit = BooleanField("Customer cannot edit the request (noedit)")
    meters_all = BooleanField("Share all meters (meters-all)")
    submit = SubmitField("Connect")


class SettingsForm(FlaskForm):
    utility = StringField("Utility ID", validators=[DataRequired(), Length(max=32)])
    client_id = StringField("client_id", validators=[DataRequired(), Length(max=128)])
    client_secret = PasswordField("client_secret", validators=[Optional(), Length(max=512)],
                                  description="Leave empty to keep the current secret.")
    redirect_uri = URLField("redirect_uri", validators=[DataRequired(), URL(require_tld=False), Length(max=500)])
    authorize_url = URLField("Authorize URL", validators=[DataRequired(), URL(require_tld=False), Length(max=500)])
    token_url = URLField("Token URL", validators=[DataRequired(), URL(require_tld=False), Length(max=500)])
    scope = StringField("Default scope", validators=[DataRequired(), Length(max=1000)])
    pkce = BooleanField("Use PKCE (S256)")
    token_auth_method = SelectField("Token endpoint authentication",
                                    choices=[SelectChoice(m) for m in TOKEN_AUTH_METHODS])
    api_url = URLField("JSON API URL", validators=[DataRequired(), URL(require_tld=False), Length(max=500)])
    api_token = PasswordField("JSON API token", validators=[Optional(), Length(max=512)],
                              description="Leave empty to keep the current token.")
    webhook_secret = PasswordField("Webhook secret", validators=[Optional(), Length(max=512)],
                                   description="Leave empty to keep the current secret.")
    submit = SubmitField("Save settings")


class ResetForm(FlaskForm):
    submit = SubmitField("Reset to defaults")
