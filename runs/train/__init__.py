"""One trial's training: the loop, its checkpoint, dev selection, metrics and the run folder it writes."""
