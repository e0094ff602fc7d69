"""Pure translation between FHIR R4 resources and the internal model. No Flask, no database."""
