"""The base of the errors ClearSep raises for input it cannot use.

The command line reports any of them as one line (``clearsep_data.cli.errors.fail``). The model folder
(``clearsep_data.modeling``) imports nothing else of ours, so its ``ClearSepLoadError`` derives from
``ValueError`` directly.
"""


class ClearSepError(ValueError):
    """A file, folder, option or dataset ClearSep cannot use; the message names it and says what is wrong."""


class CorpusError(ClearSepError):
    """A corpus that cannot be opened: unknown source, missing or malformed metadata files."""
