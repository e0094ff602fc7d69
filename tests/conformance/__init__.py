"""The validator gate (conformance/gate): independent validators over every response."""
