"""Native-bf16 detection from /proc/cpuinfo flag sets; the precision and the one warning line follow measured
matmul speeds (given here as the dicts bigseq.kernels.cpu_bf16.matmul_gflops returns)."""

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


# GFLOP/s per core as measured: an AVX2-only EPYC, a Xeon with AVX512-BF16 but no AMX, one with AMX
EMULATED = {"fp32": 55.0, "bf16": 0.8, "bf16 via fp32": 45.0}
AVX512_BF16 = {"fp32": 190.0, "bf16": 100.0, "bf16 via fp32": 165.0}
AMX = {"fp32": 190.0, "bf16": 1100.0, "bf16 via fp32": 160.0}


def test_fastest_precision_is_the_faster_matmul_not_the_flag():
    assert cpu_features.fastest_cpu_precision(EMULATED) == "fp32"
    assert cpu_features.fastest_cpu_precision(AVX512_BF16) == "fp32"  # native bf16, still slower than fp32
    assert cpu_features.fastest_cpu_precision(AMX) == "bf16"


def test_one_warning_line_names_the_lack_the_speeds_and_the_faster_choice(monkeypatch):
    monkeypatch.setenv("BIGSEQ_CPU_BF16_MATMUL", "fp32")
    line = cpu_features.bf16_warning(cpu_features.cpu_flags(EPYC), "AMD EPYC 7B13", EMULATED)
    assert "\n" not in line
    assert "AMD EPYC 7B13" in line and "no native bf16" in line and "--precision fp32" in line
    assert "1 GFLOP/s vs 55 in fp32, 45 through fp32 kernels, which bigseq uses" in line
    line = cpu_features.bf16_warning({"avx512_bf16"}, "Xeon", AVX512_BF16)
    assert "(no amx_bf16)" in line and "100 GFLOP/s vs 190" in line
    monkeypatch.setenv("BIGSEQ_CPU_BF16_MATMUL", "native")  # then the line does not claim the fp32 route
    assert "through fp32" not in cpu_features.bf16_warning({"avx512_bf16"}, "Xeon", AVX512_BF16)
    assert cpu_features.bf16_warning(cpu_features.cpu_flags(XEON), "Xeon", AMX) is None


def test_describe_cpu_for_result_files():
    assert cpu_features.describe_cpu(XEON) == "Intel(R) Xeon(R) Processor, bf16: avx512_bf16, amx_bf16"
    assert cpu_features.describe_cpu(EPYC) == "AMD EPYC 7B13, bf16: emulated (no native bf16)"
