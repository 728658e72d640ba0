"""The test kit: throwaway servers and peers, network namespaces and the worker-process harness.

Used by tests/ and bench/ only; shipped with neither the product (pyproject's packages) nor
its image (.dockerignore, Dockerfile). It may import the product; the product never imports it.
"""
