# cmake -DMODE=find_package|add_subdirectory -DSOURCE=<actorbus src>
#       -DBUILD=<actorbus build> -DWORK=<scratch dir> -P consume.cmake
# Builds and runs a consumer project the way a user would.
file(REMOVE_RECURSE ${WORK})
set(args)
if(MODE STREQUAL "find_package")
  execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD} --prefix ${WORK}/prefix
                  RESULT_VARIABLE rc OUTPUT_QUIET)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install failed")
  endif()
  set(args -DCMAKE_PREFIX_PATH=${WORK}/prefix)
else()
  set(args -DACTORBUS_SOURCE_DIR=${SOURCE})
endif()
set(here ${CMAKE_CURRENT_LIST_DIR})
foreach(step
    "${CMAKE_COMMAND};-S;${here}/${MODE};-B;${WORK}/build;-G;Ninja;-DCMAKE_BUILD_TYPE=Release;${args}"
    "${CMAKE_COMMAND};--build;${WORK}/build"
    "${WORK}/build/app")
  execute_process(COMMAND ${step} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed: ${step}\n${out}\n${err}")
  endif()
endforeach()
message("${out}")
if(NOT out MATCHES "consumer: 42")
  message(FATAL_ERROR "consumer printed: ${out}")
endif()
