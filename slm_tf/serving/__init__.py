"""A model server for slm_tf exports speaking TensorFlow Serving's REST API (scripts/serve.py).

Importing this package pulls in nothing heavy: ``drift`` is used by the export step too; the
ASGI app (Starlette) lives in ``app`` and is imported only by the server.
"""
