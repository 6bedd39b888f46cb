"""The torchship release: what `torchship.__version__` and every manifest's
export.torchship_version say."""

import os
from importlib import metadata


def release() -> str:
    """The installed package's version, or the repository's VERSION file when torchship is used
    from a checkout (python/ on PYTHONPATH): the one version the C++ side is built with too."""
    checkout = os.path.join(os.path.dirname(__file__), "..", "..", "VERSION")
    if os.path.exists(checkout):
        with open(checkout) as f:
            return f.read().strip()
    # A wheel's local label names the torch it is built for (0.1.0+torch2.13.0): not the release.
    return metadata.version("torchship").split("+")[0]


__version__ = release()
