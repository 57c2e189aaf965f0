"""Green Button (NAESB ESPI) XML: shared dataclasses, the sandbox's writer and the
demo site's safe reader.

* :mod:`demo.espi.model` - frozen dataclasses shared by both sides.
* :mod:`demo.espi.build` - writes Atom feeds/entries the way UtilityAPI does.
* :mod:`demo.espi.stream` - writes the big feeds (Batch, Bulk, IntervalBlocks) while they are sent.
* :mod:`demo.espi.parse` - reads small documents back (safely: no DOCTYPE, no entities).
* :mod:`demo.espi.reader` - reads interval data and bills as a stream, flat in memory.

Plain Python plus lxml; nothing here imports Flask.
"""
