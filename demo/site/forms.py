"""Forms of the demo site (Flask-WTF: every form carries a CSRF token)."""
import unicodedata

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
from wtforms.validators import URL, DataRequired, Length, Optional, ValidationError

from ..config import TOKEN_AUTH_METHODS
from ..scope import REQUESTABLE_FUNCTION_BLOCKS

LOOKUP_CHOICES = [SelectChoice(v, label) for v, label in (
    ("none", "None"), ("account", "Account"), ("phone", "Phone"), ("email", "Email"), ("address", "Address"))]
HISTORY_CHOICES = [SelectChoice(v, label) for v, label in (
    ("", "Utility default (2 years)"), ("31536000", "1 year"), ("63072000", "2 years"),
    ("94608000", "3 years"), ("15552000", "6 months"), ("0", "None"))]


def single_line(form, field) -> None:
    """No control characters (line breaks, tabs, NUL): a setting is one line of text, and a
    browser would change them when the form is shown again."""
    if any(unicodedata.category(c) == "Cc" for c in field.data or ""):
        raise ValidationError("Use one line of printable characters: no line breaks, tabs or control characters.")


def no_spaces(form, field) -> None:
    """A URL has no whitespace in it (RFC 3986): encode a space as %20."""
    if any(c.isspace() for c in field.data or ""):
        raise ValidationError("A URL cannot contain spaces or line breaks; write a space as %20.")


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


URL_CHECKS = [DataRequired(), URL(require_tld=False), Length(max=500), no_spaces]


class SettingsForm(FlaskForm):
    utility = StringField("Utility ID", validators=[DataRequired(), Length(max=32), single_line])
    client_id = StringField("client_id", validators=[DataRequired(), Length(max=128), single_line])
    client_secret = PasswordField("client_secret", validators=[Optional(), Length(max=512), single_line],
                                  description="Leave empty to keep the current secret.")
    redirect_uri = URLField("redirect_uri", validators=URL_CHECKS)
    authorize_url = URLField("Authorize URL", validators=URL_CHECKS)
    token_url = URLField("Token URL", validators=URL_CHECKS)
    issuer = StringField("Issuer (iss)", validators=[Optional(), URL(require_tld=False), Length(max=500), no_spaces])
    require_iss = BooleanField("Refuse a response without iss")
    scope = StringField("Default scope", validators=[DataRequired(), Length(max=1000), single_line])
    pkce = BooleanField("Use PKCE (S256)")
    token_auth_method = SelectField("Token endpoint authentication",
                                    choices=[SelectChoice(m) for m in TOKEN_AUTH_METHODS])
    api_url = URLField("JSON API URL", validators=URL_CHECKS)
    api_token = PasswordField("JSON API token", validators=[Optional(), Length(max=512), single_line],
                              description="Leave empty to keep the current token.")
    webhook_secret = PasswordField("Webhook secret", validators=[Optional(), Length(max=512), single_line],
                                   description="Leave empty to keep the current secret.")
    submit = SubmitField("Save settings")


class ResetForm(FlaskForm):
    submit = SubmitField("Reset to defaults")
