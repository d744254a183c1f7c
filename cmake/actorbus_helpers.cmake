# Helpers shared by every module, test, sample and benchmark.

# Warnings for our own code only; CAF and Boost come in as SYSTEM includes.
# GCC 12's flow-sensitive warnings (-Wstringop-overflow, -Warray-bounds,
# -Wrestrict) report false positives at -O3 and -Os (Release, MinSizeRel)
# inside the standard library and CAF's serializer; with warnings as errors
# they stay warnings there, so such a build in ./dev and CI is not stopped by
# them. Other configurations keep every warning an error.
function(actorbus_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic
                         $<$<BOOL:${ACTORBUS_WERROR}>:-Werror>)
  if(ACTORBUS_WERROR AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU"
     AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 12)
    foreach(warning stringop-overflow array-bounds restrict)
      target_compile_options(${target} PRIVATE
        $<$<CONFIG:Release,MinSizeRel>:-Wno-error=${warning}>)
    endforeach()
  endif()
endfunction()

# actorbus_add_module(<name> [SOURCES ...] [PUBLIC_DEPS ...] [PRIVATE_DEPS ...]
#                     [CONFIG_DEPENDENCIES "find_dependency(...)" ...])
# Creates actorbus_<name> with alias actorbus::<name>, public headers in
# <name>/include, exported and installed. SOURCES defaults to src/*.cpp; a
# module with no sources yet is an INTERFACE library. CONFIG_DEPENDENCIES are
# lines added to the installed actorbus-config.cmake for private dependencies
# that static consumers must still find.
function(actorbus_add_module name)
  cmake_parse_arguments(arg "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS;CONFIG_DEPENDENCIES" ${ARGN})
  set(target actorbus_${name})
  if(NOT arg_SOURCES)
    # Every src/*.cpp belongs to the module.
    file(GLOB arg_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/*.cpp)
  endif()
  if(arg_SOURCES)
    add_library(${target} ${arg_SOURCES})
    target_include_directories(${target} PUBLIC
      $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
      PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
    target_link_libraries(${target} PUBLIC ${arg_PUBLIC_DEPS} PRIVATE ${arg_PRIVATE_DEPS})
    target_compile_features(${target} PUBLIC cxx_std_20)
    set_target_properties(${target} PROPERTIES EXPORT_NAME ${name}
                          POSITION_INDEPENDENT_CODE ON)
    actorbus_set_warnings(${target})
  else()
    add_library(${target} INTERFACE)
    if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/include)
      target_include_directories(${target} INTERFACE
        $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
        $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
    endif()
    target_link_libraries(${target} INTERFACE ${arg_PUBLIC_DEPS})
    set_target_properties(${target} PROPERTIES EXPORT_NAME ${name})
  endif()
  add_library(actorbus::${name} ALIAS ${target})
  set_property(GLOBAL APPEND PROPERTY ACTORBUS_EXPORTED_TARGETS ${target})
  set_property(GLOBAL APPEND PROPERTY ACTORBUS_CONFIG_DEPENDENCIES ${arg_CONFIG_DEPENDENCIES})
  set_property(GLOBAL APPEND PROPERTY ACTORBUS_MODULE_TARGETS ${target})
  if(ACTORBUS_INSTALL AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/include)
    install(DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  endif()
endfunction()

# actorbus_add_test(<name> SOURCES ... [LIBS ...] [LABELS ...] [TIMEOUT s])
# One GoogleTest binary; each TEST becomes its own ctest test so that the
# "N passed, N failed" count is per test case.
function(actorbus_add_test name)
  cmake_parse_arguments(arg "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${arg_SOURCES})
  target_link_libraries(${name} PRIVATE ${arg_LIBS} actorbus_test_support GTest::gmock GTest::gtest_main)
  actorbus_set_warnings(${name})
  if(TARGET actorbus_test_pch)
    target_precompile_headers(${name} REUSE_FROM actorbus_test_pch)
  endif()
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 120)
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT ${arg_TIMEOUT} LABELS "${arg_LABELS}")
endfunction()

# actorbus_add_sample(<name> SOURCES ... [LIBS ...])
# Links the samples' command-line parsing (samples/command_line) and adds
# the test sample.<name>_help: `<name> --help` exits 0 and prints its usage.
function(actorbus_add_sample name)
  cmake_parse_arguments(arg "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${arg_SOURCES})
  target_link_libraries(${name} PRIVATE ${arg_LIBS} actorbus_sample_command_line)
  actorbus_set_warnings(${name})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bin)
  actorbus_add_sample_test(${name}_help COMMAND $<TARGET_FILE:${name}> --help
    EXPECT "Usage: ${name} " "-h,--help +Print this help message and exit")
endfunction()

# actorbus_add_sample_test(<test-name> COMMAND <exe> args... EXPECT <regex>...)
# Runs a sample with small inputs; every EXPECT regex must match its output.
function(actorbus_add_sample_test name)
  cmake_parse_arguments(arg "" "TIMEOUT" "COMMAND;EXPECT" ${ARGN})
  # The regexes travel as one argument joined by "@@"; a plain CMake list
  # would be split into separate arguments and all but the first ignored.
  list(JOIN arg_EXPECT "@@" expect_joined)
  add_test(NAME sample.${name}
           COMMAND ${CMAKE_COMMAND} "-DEXPECT=${expect_joined}"
                   -P ${PROJECT_SOURCE_DIR}/cmake/run_and_check.cmake -- ${arg_COMMAND})
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 120)
  endif()
  set_tests_properties(sample.${name} PROPERTIES TIMEOUT ${arg_TIMEOUT} LABELS sample)
endfunction()

# actorbus_add_module_tests(<module> [LIBS ...] [TIMEOUT s])
# One test binary per tests/<module>/*_test.cpp, named <module>_<file>.
function(actorbus_add_module_tests module)
  cmake_parse_arguments(arg "" "TIMEOUT" "LIBS" ${ARGN})
  file(GLOB files CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_test.cpp)
  foreach(file IN LISTS files)
    get_filename_component(stem ${file} NAME_WE)
    set(timeout_arg)
    if(arg_TIMEOUT)
      set(timeout_arg TIMEOUT ${arg_TIMEOUT})
    endif()
    actorbus_add_test(${module}_${stem} SOURCES ${file}
                      LIBS actorbus::${module} ${arg_LIBS} LABELS ${module} ${timeout_arg})
  endforeach()
endfunction()
