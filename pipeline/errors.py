"""The one exception type that the command line turns into a single clear line and exit status 2."""


class UserError(Exception):
    """Bad input the user must fix: names the file or field and what was expected."""
