"""Helpers tests share (builders, clients, servers); fixtures stay in the conftest.py files."""
