# Warnings and sanitizers shared by every kickgrid target.
add_library(kg_options INTERFACE)
target_compile_options(kg_options INTERFACE
  $<$<COMPILE_LANGUAGE:C>:-Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes -Wvla -Werror=implicit-function-declaration -Werror=incompatible-pointer-types -Werror=return-type>)
target_include_directories(kg_options INTERFACE ${CMAKE_SOURCE_DIR})
# glibc extensions (qsort_r, strdup, mkstemp, posix_spawn) are used throughout.
target_compile_definitions(kg_options INTERFACE _GNU_SOURCE)
if(KG_NATIVE)
  target_compile_options(kg_options INTERFACE $<$<COMPILE_LANGUAGE:C>:-march=native>)
endif()

if(KG_SANITIZE)
  string(REPLACE "," ";" _kg_sans "${KG_SANITIZE}")
  set(_kg_san_flags "-fsanitize=${KG_SANITIZE}" -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_compile_options(kg_options INTERFACE $<$<COMPILE_LANGUAGE:C>:${_kg_san_flags}>)
  target_link_options(kg_options INTERFACE -fsanitize=${KG_SANITIZE})
  message(STATUS "kickgrid: sanitizers ${KG_SANITIZE}")
endif()

if(KG_FUZZ)
  # Coverage instrumentation everywhere; only the harnesses link libFuzzer's main.
  target_compile_options(kg_options INTERFACE $<$<COMPILE_LANGUAGE:C>:-fsanitize=fuzzer-no-link>)
  target_compile_definitions(kg_options INTERFACE KG_FUZZING=1)
endif()

# Adds a static library for a layer from every .c in its folder.
# The objects are also collected into libkgapi.so (see the root CMakeLists).
function(kg_layer_library name)
  cmake_parse_arguments(ARG "" "" "LINKS" ${ARGN})
  file(GLOB _srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.c)
  add_library(${name}_obj OBJECT ${_srcs})
  target_link_libraries(${name}_obj PUBLIC kg_options ${ARG_LINKS})
  add_library(${name} STATIC $<TARGET_OBJECTS:${name}_obj>)
  target_link_libraries(${name} PUBLIC kg_options ${ARG_LINKS})
  set_property(GLOBAL APPEND PROPERTY KG_LAYER_OBJECTS $<TARGET_OBJECTS:${name}_obj>)
endfunction()
