"""The README's example runs as written, in a directory holding the real samples."""

import pathlib
import re
import shutil

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(samples, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1, "expected one python example in the README"
    for name in ("msgstore.db.crypt15", "encrypted_backup.key"):
        shutil.copy(samples / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], str(README), "exec"), {})
    assert (tmp_path / "msgstore.db").read_bytes() == (samples / "msgstore.db").read_bytes()
    assert (tmp_path / "new.crypt15").stat().st_size > 0
