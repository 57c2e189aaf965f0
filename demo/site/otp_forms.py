"""The form of the manual passcode testing page (Flask-WTF: it carries a CSRF token).

The fields only carry what was typed: :mod:`.otp_test` checks it and says what is wrong."""
from flask_wtf import FlaskForm
from wtforms import RadioField, SelectMultipleField, StringField, SubmitField, widgets
from wtforms.fields.choices import SelectChoice

from ..scope import REQUESTABLE_FUNCTION_BLOCKS


class _Checkboxes(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class OtpTestForm(FlaskForm):
    # choices come from the customer directory at run time; otp_test validates the value
    scenario = RadioField("Which test customer the flow continues as", choices=[], validate_choice=False)
    contact = StringField("Your phone number or email address")
    function_blocks = _Checkboxes(
        "Function blocks to ask for", coerce=str, validate_choice=False,
        choices=[SelectChoice(str(fb), f"{fb} · {text}") for fb, text in REQUESTABLE_FUNCTION_BLOCKS.items()])
    submit = SubmitField("Start the flow")
