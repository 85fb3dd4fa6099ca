"""Directory packages: a deterministic tar+zstd stream out, a safe bounded extraction
in, and the proof a pull leaves in the tree it extracted.

- :mod:`.tree`: the value types (``Entry``, ``Tree``), the tar framing both directions
  share, and scanning a directory into a ``Tree``;
- :mod:`.pack`: the canonical tar, its ``tree_sha256``, and the .tar.zst ``Packer``;
- :mod:`.extract`: the ``ChunkPipe`` from a download, and ``extract`` (hostile input,
  bounded by a ``Limit``);
- :mod:`.proof`: the proof of a pulled tree and its local edits.

Callers import the submodule they need: nothing is imported here, so checking a pulled
tree's proof loads neither zstandard nor tarfile.
"""
