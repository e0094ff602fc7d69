"""Validator gate: walk a FHIR server, save every response, run independent validators.

See __main__.py (the command), walk.py, validators.py, invariants.py.
"""
