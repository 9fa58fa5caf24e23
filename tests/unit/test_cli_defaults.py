"""The CLI's optimization defaults (parsed as None so that giving one to amortized can be reported) are the
library's: rdopt.cli.common writes them out so that parsing never imports torch."""

import dataclasses

from rdopt.cli.common import OPTIMIZATION_DEFAULTS
from rdopt.infer.image import SaviOptions


def test_cli_optimization_defaults_are_the_library_defaults():
    defaults = {f.name: f.default for f in dataclasses.fields(SaviOptions)}
    for name, value in OPTIMIZATION_DEFAULTS.items():
        assert defaults[name] == value, name
