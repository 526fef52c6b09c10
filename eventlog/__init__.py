"""The account event log on the eventsourcing library, and the storage below both adapters."""
