"""Running the alignment metrics on stores (cached, with intervals) and coverage of one embodiment by another."""
