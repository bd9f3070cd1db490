"""walrust integration-test helpers.

servers     moto and SeaweedFS S3 servers on loopback, replica views (S3, file)
faultproxy  an HTTP/1.1 proxy that injects S3 faults
dbtools     SQLite databases, a deterministic concurrent writer, checksums
daemon      walrustd under test, walrustctl runner, raw protocol client
"""
