"""A test plug-in package for envkit (see ``echo.EchoEnv``)."""
