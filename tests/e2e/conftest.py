import pytest

from .runner import preprocess


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A binarized tiny corpus (bigseq preprocess), shared by the end-to-end tests."""
    root = tmp_path_factory.mktemp("tiny_data")
    return preprocess(str(root / "raw"), str(root / "data-bin"))
