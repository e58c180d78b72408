"""Portal's bytes: dtypes, schemas, packets, the frame-video header and the wire contract.

Pure functions and data (``portal.yaml`` included); no network, no asyncio.
"""
