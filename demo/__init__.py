"""GBC Demo: a demo third party for Green Button Connect My Data, with an embedded
Peninsula Clean Energy (PCE) sandbox data custodian.

Framework-free protocol code lives in :mod:`demo.scope`, :mod:`demo.lookup`,
:mod:`demo.tokens`, :mod:`demo.espi` and :mod:`demo.config`; the two Flask
applications are :mod:`demo.site` (the third party) and :mod:`demo.sandbox`
(the utility side).
"""
