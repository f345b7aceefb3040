"""In-memory implementations of the ports in ``orderflow_exports.domain.ports``.

They keep the semantics the use cases rely on (compare-and-set status changes, atomic publish,
write-once archive keys) so that use-case tests run in milliseconds; the suites in
``orderflow_exports_tests.contracts`` hold every fake to the same behaviour as its real adapters.
"""
