"""Reports for customers, built from the contract engine's results: the data of a report is
made once and every format (xlsx, CSV, PDF) only lays it out, so the formats cannot disagree."""
