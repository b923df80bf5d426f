"""The store: documents' rows, their update log and snapshots in the database, and files on
disk.

Everything here is blocking and touches no document object: callers go through
:mod:`~jupyter_ydjango.store.dispatch`.
"""
