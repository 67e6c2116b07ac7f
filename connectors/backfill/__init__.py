"""EMS / portal exports into Kafka with their original timestamps (issue 5, item 5)."""
