"""The rst files are doctested; conf.py is configuration, not a test module."""

collect_ignore = ["conf.py"]
