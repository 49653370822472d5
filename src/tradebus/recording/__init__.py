"""Raw upstream traffic: the recording format, its recorder and its replayer.

A source with ``record = true`` writes every transport event (a connection opened, bytes or a
message received, what tradebus sent, a connection closed, a timer that woke the adapter) to
``<state_dir>/recordings/<source>/`` as JSON Lines in independent zstd frames (``format``).
The writing runs on a thread of its own (``recorder``). ``tradebus replay`` feeds those events
back through the same adapter code, with the clock taken from the recording (``replay``).

- ``format``   records, frames, and the sans-I/O reader (bytes in, records out)
- ``redact``   what never lands in a recording: pure functions over one record
- ``recorder`` files, rotation, retention; the writer thread
- ``files``    reading recording files back (the one place that opens them)
- ``replay``   the replaying transport and the engine that drives an adapter with it
"""
