"""The internal group-session model and its persistence. Knows no Flask and no FHIR."""
