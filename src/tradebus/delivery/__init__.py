"""Delivery: every sink a follower of the journal, from its own durable cursor.

The daemon appends batches to the journal and tells delivery how far it may read (a
``Watermark``); each ``Follower`` reads from its cursor in steps, filters, writes, waits for the
acknowledgement and moves its cursor. Delivery runs in a process of its own (``process.py``,
supervised by the daemon) or inline in the daemon's loop (``inline.py``): the same
``Delivery`` (``core.py``) either way.
"""
