"""The storage layer: registry, repositories, blob stores, uploads (distribution ``registry/storage``)."""
