"""Files the proxy data sets are made from (see derive_default.py)."""
