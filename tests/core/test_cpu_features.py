"""Native-bf16 detection from /proc/cpuinfo flag sets, and the one warning line for emulated bf16."""

from bigseq.distributed import cpu_features

EPYC = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n"
XEON = "model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
GRAVITON = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


def test_flags_and_model_from_cpuinfo():
    assert cpu_features.cpu_flags(EPYC) == {"fpu", "sse2", "avx", "avx2", "fma"}
    assert cpu_features.cpu_model(XEON) == "Intel(R) Xeon(R) Processor"
    assert "bf16" in cpu_features.cpu_flags(GRAVITON)
    assert cpu_features.cpu_flags("") == set()


def test_native_bf16_needs_avx512_bf16_amx_or_arm_bf16():
    assert cpu_features.native_bf16({"avx2", "avx512f"}) == []
    assert cpu_features.native_bf16({"avx512_bf16"}) == ["avx512_bf16"]
    assert cpu_features.native_bf16({"amx_bf16", "avx512_bf16"}) == ["avx512_bf16", "amx_bf16"]
    assert cpu_features.native_bf16(cpu_features.cpu_flags(GRAVITON)) == ["bf16"]


def test_fastest_precision_follows_the_flags():
    assert cpu_features.fastest_cpu_precision(cpu_features.cpu_flags(EPYC)) == "fp32"
    assert cpu_features.fastest_cpu_precision(cpu_features.cpu_flags(XEON)) == "bf16"


def test_one_warning_line_names_the_lack_and_the_faster_choice():
    line = cpu_features.bf16_warning(cpu_features.cpu_flags(EPYC), "AMD EPYC 7B13")
    assert "\n" not in line
    assert "AMD EPYC 7B13" in line and "no native bf16" in line and "--precision fp32" in line
    assert cpu_features.bf16_warning(cpu_features.cpu_flags(XEON), "Xeon") is None


def test_describe_cpu_for_result_files():
    assert cpu_features.describe_cpu(XEON) == "Intel(R) Xeon(R) Processor, bf16: avx512_bf16, amx_bf16"
    assert cpu_features.describe_cpu(EPYC) == "AMD EPYC 7B13, bf16: emulated (no native bf16)"
