"""stalwart: production-hardening building blocks for Python backends."""
