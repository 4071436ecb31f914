"""Discovery: find the certificates already out there (TLS endpoints, files, cloud secret stores)
and keep an inventory of them in the store (sync.store's discovery tables).

Each source module yields `Observation`s (a location and the certificates seen there); `record`
turns them into facts (never a key, never the value they were found in), marks the ones certsync
issued as managed, and stores where each was seen. A scan never writes anywhere but the store.
"""

import warnings as _warnings

# Found certificates are other people's: some old roots carry a negative serial, which cryptography
# reads with a deprecation warning on every access. That is a fact about them, not ours to print.
_warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive")
