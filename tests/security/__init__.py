"""The adversarial suite is a package so that its platform (a package-scoped fixture) stops when the suite ends,
before the next suite's platform runs beside it."""
