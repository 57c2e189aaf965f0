"""Green Button (NAESB ESPI) XML: shared dataclasses, the sandbox's writer and the
demo site's safe reader.

* :mod:`demo.espi.model` - frozen dataclasses shared by both sides.
* :mod:`demo.espi.build` - writes Atom feeds/entries the way UtilityAPI does.
* :mod:`demo.espi.parse` - reads them back (safely: no DOCTYPE, no entities).

Plain Python plus lxml; nothing here imports Flask.
"""
