"""The one runtime every jangkau service starts from: configuration, auth, errors,
interceptors, telemetry, logging, storage and the server lifecycle."""
