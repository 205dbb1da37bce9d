"""Parameter validation: errors name the key, the value and the file."""

from pathlib import Path

import pytest
import yaml

from hcc_utils.config import ParamsError, load_params

PARAMS_DIR = Path(__file__).resolve().parents[1] / "params"


def write(tmp_path: Path, data: dict, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


BASE = {"name": "t", "cohort": {"synthetic": {"n": 20, "image_size": 64}}}


@pytest.mark.parametrize("name", ["smoke", "default", "paper"])
def test_shipped_params_validate(name):
    params = load_params(PARAMS_DIR / f"{name}.yaml")
    assert params.name == name
    assert params.protocol in ("leak_free", "onekey_compat")


def test_unknown_key_names_key_value_and_file(tmp_path):
    path = write(tmp_path, {**BASE, "slices": {"ofsets": [0, 1]}})
    with pytest.raises(ParamsError) as err:
        load_params(path)
    message = str(err.value)
    assert str(path) in message and "slices.ofsets" in message and "[0, 1]" in message and "unknown key" in message


def test_synthetic_section_errors_name_the_key_path(tmp_path):
    path = write(tmp_path, {"cohort": {"synthetic": {"n": 3, "sed": 1, "scanners": [{"name": "x"}]}}})
    with pytest.raises(ParamsError) as err:
        load_params(path)
    message = str(err.value)
    assert str(path) in message
    assert "key 'cohort.synthetic.n' = 3" in message and "greater than or equal to 8" in message
    assert "unknown key 'cohort.synthetic.sed' (value 1)" in message and "hcc_utils/synth/params.py" in message
    assert "missing key 'cohort.synthetic.scanners.0.tube_current_ma'" in message
    with pytest.raises(ParamsError, match=r"cohort\.synthetic\.mvi_shares.*sum to 1"):
        load_params(write(tmp_path, {"cohort": {"synthetic": {"mvi_shares": [0.5, 0.2, 0.2]}}}, "shares.yaml"))
    with pytest.raises(ParamsError, match=r"key 'cohort\.synthetic' = 20: .*dictionary"):
        load_params(write(tmp_path, {"cohort": {"synthetic": 20}}, "scalar.yaml"))


def test_synthetic_section_is_the_generators_own_class(tmp_path):
    from hcc_utils.synth.params import SyntheticCohort

    params = load_params(PARAMS_DIR / "smoke.yaml")
    assert type(params.cohort.synthetic) is SyntheticCohort and params.cohort.synthetic.image_size == 128
    dumped = yaml.safe_load(params.dump_yaml())["cohort"]["synthetic"]
    assert dumped["mvi_shares"] == [0.65, 0.19, 0.16] and dumped["scanners"][0]["name"] == "GE Revolution ACT"


def test_wrong_type_names_key_and_value(tmp_path):
    path = write(tmp_path, {**BASE, "cnn": {"batch_size": "many"}})
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert "cnn.batch_size" in str(err.value) and "'many'" in str(err.value) and str(path) in str(err.value)


def test_out_of_range_value(tmp_path):
    path = write(tmp_path, {**BASE, "preprocess": {"window_width_hu": -5}})
    with pytest.raises(ParamsError, match=r"preprocess\.window_width_hu.*-5"):
        load_params(path)


def test_protocol_is_checked(tmp_path):
    path = write(tmp_path, {**BASE, "protocol": "leaky"})
    with pytest.raises(ParamsError, match="protocol.*'leaky'"):
        load_params(path)
    assert load_params(write(tmp_path, {**BASE, "protocol": "onekey_compat"}, "ok.yaml")).protocol == "onekey_compat"


def test_cohort_needs_exactly_one_source(tmp_path):
    with pytest.raises(ParamsError, match="exactly one of 'synthetic' or 'manifest'"):
        load_params(write(tmp_path, {"cohort": {}}))
    both = {"cohort": {"synthetic": {"n": 20}, "manifest": "c.csv"}}
    with pytest.raises(ParamsError, match="exactly one"):
        load_params(write(tmp_path, both, "both.yaml"))


def test_manifest_is_relative_to_params_file(tmp_path):
    (tmp_path / "sub").mkdir()
    params = load_params(write(tmp_path / "sub", {"cohort": {"manifest": "../cohort.csv"}}))
    assert params.cohort.manifest == (tmp_path / "cohort.csv").resolve()


def test_every_relative_path_is_relative_to_params_file(tmp_path, monkeypatch):
    folder = tmp_path / "study"
    (folder / "weights").mkdir(parents=True)
    data = {"cohort": {"manifest": "data/cohort.csv"}, "radiomics": {"settings": "my_radiomics.yaml"},
            "cnn": {"weights": {"resnet18": "weights/r18.pt", "densenet121": str(tmp_path / "abs.pt")}}}
    path = write(folder, data)
    monkeypatch.chdir(tmp_path)  # the working directory plays no part
    params = load_params(Path("study") / "p.yaml")
    assert params.cohort.manifest == folder.resolve() / "data" / "cohort.csv"
    assert params.radiomics.settings == folder.resolve() / "my_radiomics.yaml"
    assert params.cnn.weights == {"resnet18": folder.resolve() / "weights" / "r18.pt",
                                  "densenet121": tmp_path / "abs.pt"}
    # the copy a run writes into its folder (dump_yaml) loads to the same paths from there
    (tmp_path / "run").mkdir()
    copy = write(tmp_path / "run", yaml.safe_load(params.dump_yaml()), "params.yaml")
    assert load_params(copy).model_dump() == params.model_dump() == load_params(path).model_dump()


def test_shipped_params_load_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    smoke = load_params(PARAMS_DIR / "smoke.yaml")
    assert smoke.radiomics.settings == PARAMS_DIR / "radiomics_smoke.yaml" and smoke.radiomics.settings.is_file()
    default_settings = load_params(write(tmp_path, BASE)).radiomics.settings
    assert default_settings == PARAMS_DIR / "radiomics_default.yaml" and default_settings.is_file()
    from hcc_utils import radiomics

    assert radiomics.settings_path(smoke) == PARAMS_DIR / "radiomics_smoke.yaml"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cohort: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_offsets_must_hold_the_centre(tmp_path):
    with pytest.raises(ParamsError, match="offsets must contain 0"):
        load_params(write(tmp_path, {**BASE, "slices": {"offsets": [-1, 1]}}))


def test_dump_round_trips(tmp_path):
    params = load_params(PARAMS_DIR / "smoke.yaml")
    again = load_params(write(tmp_path, yaml.safe_load(params.dump_yaml())))
    assert again.model_dump() == params.model_dump()
