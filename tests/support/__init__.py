"""Helpers shared by the test modules (fake servers, image makers). Importable because tests/conftest.py
puts tests/ on sys.path."""
