"""Bytewax dataflows. Logic lives in plain classes and functions beside each flow; the
`build_flow` factories only wire operators."""
