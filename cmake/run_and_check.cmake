# cmake -DEXPECT="re1;re2" -P run_and_check.cmake -- <command> [args...]
# Runs the command, fails when it exits non-zero or when any regex in EXPECT
# does not match its combined output. Used to run every sample as a test.
set(cmd)
set(seen_sep FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE 0 ${last})
  if(seen_sep)
    list(APPEND cmd "${CMAKE_ARGV${i}}")
  elseif("${CMAKE_ARGV${i}}" STREQUAL "--")
    set(seen_sep TRUE)
  endif()
endforeach()
execute_process(COMMAND ${cmd} OUTPUT_VARIABLE out ERROR_VARIABLE err
                RESULT_VARIABLE rc TIMEOUT 300)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "command exited with '${rc}'")
endif()
foreach(re IN LISTS EXPECT)
  if(NOT "${out}${err}" MATCHES "${re}")
    message(FATAL_ERROR "output does not match '${re}'")
  endif()
endforeach()
