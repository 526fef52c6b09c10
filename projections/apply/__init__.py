"""`apply`: the intent protocol, its compare-and-set SQL, the writes, the audit, the relay."""
