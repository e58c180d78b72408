"""Portal's bytes: dtypes, schemas and fingerprints, packet layouts, the frame-video header, and the
``portal.yaml`` wire contract. Pure functions and data; no network, no asyncio.
"""
