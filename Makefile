# bdense - build, test, demo.
#   make                 the `bdense` command (build/bdense) and the examples
#   make test            build and run every test (tests/run.sh)
#   make test SAN=1      the same under ASan + UBSan
#   make BLAS=openblas   also route bd_sgemm through OpenBLAS (BLAS=none|auto|openblas;
#                        default none: the layer kernels never call a BLAS,
#                        docs/performance.md "CBLAS")
#   make demo            the README's main job
#   make web             the browser demo (web/build/index.html; emcc, docs/web.md)
#   make valgrind        memcheck over the BLAS=none test binaries (TEST_QUICK=1)
#   make tsan            the concurrency test under ThreadSanitizer
#   make fuzz            every fuzz target for FUZZ_SECS seconds (30)
#   make install PREFIX=/usr/local [DESTDIR=...]   header, pkg-config file,
#                        CMake package (find_package(bdense)), the command
#   make uninstall PREFIX=...                      removes exactly those files
.DEFAULT_GOAL := all
CC      ?= cc
CXX     ?= c++
BLAS    ?= none
SAN     ?= 0
OPT     ?= -O2
BUILD   ?= build
WARN     = -Wall -Wextra -Wpedantic
CFLAGS_BASE = -std=c99 $(OPT) -g $(WARN) -I.
LDLIBS_BASE = -lm -lpthread

ifeq ($(BLAS),auto)
  HAVE_OPENBLAS := $(shell printf '\043include <cblas.h>\nint main(void){float a=1,b=1,c=0;cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.f,&a,1,&b,1,0.f,&c,1);return c!=1.f;}\n' | $(CC) -x c - -o /tmp/bdense_blas_probe -lopenblas >/dev/null 2>&1 && echo yes)
  ifeq ($(HAVE_OPENBLAS),yes)
    BLAS_EFFECTIVE = openblas
  else
    BLAS_EFFECTIVE = none
  endif
else
  BLAS_EFFECTIVE = $(BLAS)
endif
ifeq ($(BLAS_EFFECTIVE),openblas)
  BLAS_CFLAGS = -DBDENSE_USE_CBLAS
  BLAS_LIBS   = -lopenblas
endif
# OpenMP (OPENMP=auto|yes|no): kernels split work over the context's n_threads
ifneq ($(OPENMP),no)
  HAVE_OPENMP := $(shell printf 'int main(void){return 0;}\n' | $(CC) -fopenmp -x c - -o /tmp/bdense_omp_probe >/dev/null 2>&1 && echo yes)
  ifeq ($(HAVE_OPENMP),yes)
    OMP_FLAGS = -fopenmp
  endif
endif
ifeq ($(SAN),1)
  SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

CFLAGS  = $(CFLAGS_BASE) $(BLAS_CFLAGS) $(OMP_FLAGS) $(SAN_FLAGS) $(EXTRA_CFLAGS)
LDFLAGS += $(SAN_FLAGS) $(OMP_FLAGS)
LDLIBS  = $(BLAS_LIBS) $(LDLIBS_BASE)

TEST_SRCS := $(wildcard tests/test_*.c)
TEST_BINS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRCS))
CLI_SRCS  := $(wildcard cli/*.c)
# examples/NAME.c and examples/DIR/NAME.c (one file each) -> $(BUILD)/examples/...
EXAMPLE_SRCS := $(wildcard examples/*.c examples/*/*.c)
EXAMPLE_BINS := $(patsubst examples/%.c,$(BUILD)/examples/%,$(EXAMPLE_SRCS))

.PHONY: all test tests compile-test clean demo info valgrind tsan fuzz install uninstall examples
examples: $(EXAMPLE_BINS)
all: $(BUILD)/bdense $(EXAMPLE_BINS)

info:
	@echo "BLAS=$(BLAS) -> $(BLAS_EFFECTIVE); OpenMP: $(if $(OMP_FLAGS),yes,no); SAN=$(SAN); CC=$(CC)"

$(BUILD)/bdense: $(CLI_SRCS) $(wildcard cli/*.h) bdense.h
	@mkdir -p $(dir $@)
	$(if $(CLI_SRCS),$(CC) $(CFLAGS) -o $@ $(CLI_SRCS) $(LDFLAGS) $(LDLIBS),@echo "no CLI sources yet")

$(BUILD)/examples/%: examples/%.c bdense.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c bdense.h tests/bdtest.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

# test_cli compiles cli/util.c, metric.c, data.c and the fuzz_cli target in
$(BUILD)/tests/test_cli: $(CLI_SRCS) cli/cli.h tests/fuzz/fuzz_cli.c

tests: $(TEST_BINS)

test: tests $(BUILD)/bdense compile-test
	@tests/run.sh $(BUILD)

# The header as C99, as C++, with BDENSE_STATIC, with and without CBLAS,
# under gcc and clang, warnings as errors.
compile-test:
	@tests/compile_test.sh

# Reliability passes (docs/reliability.md).  valgrind runs the zero-
# dependency build (OpenBLAS's CPU kernels and thread pool only add noise);
# tests honour TEST_QUICK=1 by shrinking their loops.  Leaks count as errors.
# VALGRIND_SKIP: long numerical tests (test_eval honours TEST_QUICK since
# 2026-12-06; not yet timed under valgrind so) that do not shrink under TEST_QUICK
# yet (their code paths run under valgrind in test_faults' session;
# test_eval's Frechet code runs under valgrind in test_cli's feature-metric
# test; its cross-entropy and classifier run under ASan+UBSan only; whole, it
# ran over 10 minutes under valgrind on 2026-12-06).
VALGRIND ?= valgrind --error-exitcode=9 -q --leak-check=full --errors-for-leak-kinds=definite
# VG_BUILD: the build whose binaries it runs (BLAS=none); CI passes
# VG_BUILD=build, the default build being the same BLAS=none build.
VALGRIND_SKIP ?= test_train test_unet test_sampler test_eval
VG_BUILD ?= build-noblas
valgrind:
	$(MAKE) BUILD=$(VG_BUILD) BLAS=none OPT=-O2 SAN=0 EXTRA_CFLAGS= tests $(VG_BUILD)/bdense
	rm -rf build-vg && mkdir -p build-vg/tests
	ln -s ../$(VG_BUILD)/bdense build-vg/bdense
	for t in $(VG_BUILD)/tests/test_*; do \
	  case " $(VALGRIND_SKIP) " in *" $$(basename $$t) "*) ;; *) ln -s ../../$$t build-vg/tests/ ;; esac; \
	done
	TEST_QUICK=1 OMP_WAIT_POLICY=passive tests/run.sh build-vg $(VALGRIND)

# ThreadSanitizer needs every access instrumented: built-in GEMM, clang.
TSAN_CC ?= clang
tsan:
	@mkdir -p build-tsan/tests
	$(TSAN_CC) -std=c99 -O1 -g $(WARN) -I. -fsanitize=thread -o build-tsan/tests/test_faults tests/test_faults.c -lm -lpthread
	TSAN_OPTIONS="halt_on_error=1" TEST_QUICK=1 tests/run.sh build-tsan

# Two lanes (CI has 2 cores) of three targets; each gets FUZZ_SECS seconds
# (30: a regression smoke run on the committed corpora; long campaigns are
# run at development time, docs/reliability.md).
FUZZ_SECS ?= 30
fuzz:
	@mkdir -p build/fuzz
	tests/fuzz/run.sh $(FUZZ_SECS) safetensors idx checkpoint > build/fuzz/lane1.log 2>&1 & lane=$$!; \
	tests/fuzz/run.sh $(FUZZ_SECS) npy json cli; st=$$?; \
	wait $$lane || st=1; cat build/fuzz/lane1.log; exit $$st

demo: $(BUILD)/bdense
	@tools/demo.sh $(BUILD)

clean:
	rm -rf $(BUILD)


# ---- browser demo (docs/web.md) ------------------------------------------
#   make web   web/bdense_web.c + bdense.h -> WebAssembly with Emscripten
#              (Debian: apt-get install emscripten); web/build/ is a static
#              folder: open web/build/index.html (the wasm is embedded in
#              bdense_web.js, -sSINGLE_FILE, so file:// works) or serve it.
# Debian's emcc uses its prebuilt, read-only system-library cache
# (FROZEN_CACHE); an emsdk install uses its own.  NODE_PATH: Debian's emcc
# runs its JS optimiser with the `acorn` module from /usr/share/nodejs,
# which a non-Debian node (e.g. nodesource's) does not search by itself.
# -msimd128: wasm SIMD (every current browser); about 3x faster here.
# WASM_ASYNC_COMPILATION=0: the module is ready when the page's scripts
# have run, so headless Chromium's virtual time (tests/web/run.sh) cannot
# run out while the wasm still compiles in the background.
EMCC       ?= emcc
comma      := ,
WEB_BUILD  ?= web/build
WEB_FUNCS   = init train teacher_steps data teacher_paths distill_init distill distill_steps \
              weight eval ddim_mse gtraj jumps info message free
WEB_EXPORTS = $(subst $(eval) ,$(comma),$(patsubst %,_bdw_%,$(WEB_FUNCS)))
WEB_FLAGS  ?= -std=c99 -O2 -msimd128 $(WARN)
.PHONY: web
web: $(WEB_BUILD)/index.html $(WEB_BUILD)/demo.js $(WEB_BUILD)/bdense_web.js

$(WEB_BUILD)/bdense_web.js: web/bdense_web.c bdense.h
	@mkdir -p $(dir $@)
	NODE_PATH=/usr/share/nodejs$${NODE_PATH:+:$$NODE_PATH} $(EMCC) $(WEB_FLAGS) -o $@ $< \
	  -sSINGLE_FILE=1 -sMODULARIZE=1 -sEXPORT_NAME=createBdense -sENVIRONMENT=web \
	  -sALLOW_MEMORY_GROWTH=1 -sEXPORTED_FUNCTIONS=$(WEB_EXPORTS) \
	  -sEXPORTED_RUNTIME_METHODS=UTF8ToString -sWASM_ASYNC_COMPILATION=0

$(WEB_BUILD)/%: web/%
	@mkdir -p $(dir $@)
	cp $< $@

# ---- CUDA (optional) -------------------------------------------------------
#   make CUDA=1          also builds $(BUILD)/tests/test_cuda (run by
#                        `make CUDA=1 test`; prints "no GPU, skipped" without
#                        a GPU) and a CUDA-enabled $(BUILD)/bdense
#                        (-DBDENSE_CUDA, bdense_cuda.o, cuBLAS)
#   make cuda            test_cuda, test_cuda_unet, bench/cuda_bench (nvcc)
#   make cuda-emu-test   runs tests/cuda/test_cuda*.c against bdense_cuda.cu
#                        compiled for the host emulator (no GPU, no nvcc)
CUDA      ?= 0
NVCC      ?= $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc 2>/dev/null) nvcc)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
             -gencode arch=compute_90,code=compute_90
NVCCFLAGS ?= -O2 -g -I. $(CUDA_ARCH) -Xcompiler -Wall,-Wextra
CUDA_LIBS  = -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++

$(BUILD)/cuda/bdense_cuda.o: bdense_cuda.cu bdense.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/cuda/test_cuda.o: tests/cuda/test_cuda.c bdense.h tests/bdtest.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -c $< -o $@

$(BUILD)/tests/test_cuda: $(BUILD)/cuda/test_cuda.o $(BUILD)/cuda/bdense_cuda.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CUDA_LIBS) $(LDLIBS)

$(BUILD)/cuda/test_cuda_unet.o: tests/cuda/test_cuda_unet.c bdense.h tests/bdtest.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -c $< -o $@

$(BUILD)/tests/test_cuda_unet: $(BUILD)/cuda/test_cuda_unet.o $(BUILD)/cuda/bdense_cuda.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CUDA_LIBS) $(LDLIBS)

$(BUILD)/cuda/cuda_bench.o: bench/cuda_bench.c bdense.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/bench/cuda_bench: $(BUILD)/cuda/cuda_bench.o $(BUILD)/cuda/bdense_cuda.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CUDA_LIBS) $(LDLIBS)

CUDA_BINS = $(BUILD)/tests/test_cuda $(BUILD)/tests/test_cuda_unet $(BUILD)/bench/cuda_bench
.PHONY: cuda
cuda: $(CUDA_BINS)

ifeq ($(CUDA),1)
all: $(CUDA_BINS)
tests: $(BUILD)/tests/test_cuda $(BUILD)/tests/test_cuda_unet
$(BUILD)/bdense: $(BUILD)/cuda/bdense_cuda.o
$(BUILD)/bdense: CFLAGS += -DBDENSE_CUDA
$(BUILD)/bdense: LDLIBS += $(BUILD)/cuda/bdense_cuda.o $(CUDA_LIBS)
endif

EMU_FLAGS = -DBDENSE_CUDA_EMULATE -Itests/cuda/emu -I. -O2 -g
$(BUILD)/cuda-emu/bdense_cuda.o: bdense_cuda.cu bdense.h tests/cuda/emu/bd_cuda_emu.h
	@mkdir -p $(dir $@)
	$(CXX) -std=c++14 -x c++ $(EMU_FLAGS) -Wall -Wextra $(SAN_FLAGS) -c $< -o $@

$(BUILD)/cuda-emu/test_cuda: tests/cuda/test_cuda.c $(BUILD)/cuda-emu/bdense_cuda.o bdense.h tests/bdtest.h
	$(CC) $(CFLAGS) -DBDENSE_CUDA_EMULATE -Itests -o $@ $< $(BUILD)/cuda-emu/bdense_cuda.o $(LDFLAGS) -lstdc++ $(LDLIBS)

$(BUILD)/cuda-emu/test_cuda_unet: tests/cuda/test_cuda_unet.c $(BUILD)/cuda-emu/bdense_cuda.o bdense.h tests/bdtest.h
	$(CC) $(CFLAGS) -DBDENSE_CUDA_EMULATE -Itests -o $@ $< $(BUILD)/cuda-emu/bdense_cuda.o $(LDFLAGS) -lstdc++ $(LDLIBS)

.PHONY: cuda-emu-test
cuda-emu-test: $(BUILD)/cuda-emu/test_cuda $(BUILD)/cuda-emu/test_cuda_unet
	ASAN_OPTIONS=allocator_may_return_null=1 $(BUILD)/cuda-emu/test_cuda
	$(BUILD)/cuda-emu/test_cuda_unet
# ---- install / uninstall -------------------------------------------------
# The header is the library; the pkg-config file and the CMake package say
# where it is and whether the install was configured with CBLAS (BLAS=...).
PREFIX  ?= /usr/local
DESTDIR ?=
VERSION := $(shell sed -n 's/^\#define BDENSE_VERSION_STRING "\(.*\)"/\1/p' bdense.h)
VERSION_MAJOR := $(word 1,$(subst ., ,$(VERSION)))
VERSION_MINOR := $(word 2,$(subst ., ,$(VERSION)))
ifeq ($(BLAS_EFFECTIVE),openblas)
  PC_CFLAGS = -DBDENSE_USE_CBLAS $(OMP_FLAGS)
  PC_LIBS   = $(OMP_FLAGS) -lopenblas -lm
  PC_CBLAS  = ON
else
  PC_CFLAGS = $(OMP_FLAGS)
  PC_LIBS   = $(OMP_FLAGS) -lm
  PC_CBLAS  = OFF
endif
PC_OPENMP = $(if $(OMP_FLAGS),ON,OFF)
INSTALL_ROOT = $(DESTDIR)$(PREFIX)
INSTALL_BIN  = $(if $(CLI_SRCS),$(BUILD)/bdense)
INSTALLED_FILES = include/bdense.h lib/pkgconfig/bdense.pc \
  lib/cmake/bdense/bdense-config.cmake lib/cmake/bdense/bdense-config-version.cmake \
  $(if $(CLI_SRCS),bin/bdense)

install: $(INSTALL_BIN)
	@test -n "$(PREFIX)" || { echo "PREFIX is empty"; exit 1; }
	install -d "$(INSTALL_ROOT)/include" "$(INSTALL_ROOT)/lib/pkgconfig" "$(INSTALL_ROOT)/lib/cmake/bdense"
	install -m 644 bdense.h "$(INSTALL_ROOT)/include/bdense.h"
	sed -e 's|@BDENSE_PC_PREFIX@|$(PREFIX)|' -e 's|@BDENSE_PC_INCLUDEDIR@|$${prefix}/include|' \
	    -e 's|@BDENSE_PC_VERSION@|$(VERSION)|' -e 's|@BDENSE_PC_CFLAGS@|$(PC_CFLAGS)|' \
	    -e 's|@BDENSE_PC_LIBS@|$(PC_LIBS)|' bdense.pc.in > "$(INSTALL_ROOT)/lib/pkgconfig/bdense.pc"
	sed -e 's|@USE_CBLAS@|$(PC_CBLAS)|' -e 's|@USE_OPENMP@|$(PC_OPENMP)|' cmake/bdense-config-make.cmake.in \
	    > "$(INSTALL_ROOT)/lib/cmake/bdense/bdense-config.cmake"
	sed -e 's|@VERSION@|$(VERSION)|' -e 's|@VERSION_MAJOR@|$(VERSION_MAJOR)|' \
	    -e 's|@VERSION_MINOR@|$(VERSION_MINOR)|' cmake/bdense-config-version-make.cmake.in \
	    > "$(INSTALL_ROOT)/lib/cmake/bdense/bdense-config-version.cmake"
	$(if $(CLI_SRCS),install -d "$(INSTALL_ROOT)/bin" && install -m 755 $(BUILD)/bdense "$(INSTALL_ROOT)/bin/bdense")
	@echo "installed bdense $(VERSION) (BLAS=$(BLAS_EFFECTIVE), OpenMP $(PC_OPENMP)) into $(INSTALL_ROOT)"

uninstall:
	rm -f $(addprefix "$(INSTALL_ROOT)/,$(addsuffix ",$(INSTALLED_FILES)))
	-rmdir "$(INSTALL_ROOT)/lib/cmake/bdense" 2>/dev/null
