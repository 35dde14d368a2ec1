"""Errors about the user's files, options or machine (not bugs in Masquerade): the command line
prints them as one line and exits with status 2; a running show logs them and goes on."""


class MasqueradeError(Exception):
    pass
