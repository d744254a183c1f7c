# Checks the module layering (CONTRIBUTING.md, "Modules and their order"):
#
#   runtime                      bottom
#   actors        bus            side by side on runtime; neither uses the other
#   pipeline                     on actors and bus
#   ipc           queue          above; neither uses the other
#
# 1. Links: a module links only modules below it; actors and bus link
#    runtime and no other module; pipeline links actors and bus;
#    actorbus::actorbus links every module.
# 2. Includes: a module's headers and sources include headers only of
#    itself and of the modules below it.
# 3. Private dependencies stay private: no public header includes
#    boost/interprocess or hiredis, and no module links Boost or hiredis
#    publicly.
# 4. Every module has include/actorbus/<module>/fwd.hpp and an umbrella
#    header include/actorbus/<module>.hpp that includes each of its public
#    headers (detail/ excluded); include/actorbus/all.hpp includes every
#    umbrella.
#
# usage: cmake -DGRAPH=<build>/tests/build/module_graph.cmake
#              -DSOURCE=<source dir> -P module_graph_test.cmake

cmake_minimum_required(VERSION 3.25)
include(${GRAPH})

# What each module may use (the modules strictly below it).
set(below_runtime "")
set(below_actors runtime)
set(below_bus runtime)
set(below_pipeline runtime actors bus)
set(below_ipc runtime actors bus pipeline)
set(below_queue runtime actors bus pipeline)
set(known_modules runtime actors bus pipeline ipc queue)

set(failures "")
macro(fail)
  string(CONCAT failure ${ARGV})
  list(APPEND failures "${failure}")
endmacro()

# The module named by a link item ("actorbus::bus", "actorbus_bus"), or "".
function(module_of item out)
  set(name "")
  if(item MATCHES "^actorbus::([a-z_]+)$")
    set(name ${CMAKE_MATCH_1})
  elseif(item MATCHES "^actorbus_([a-z_]+)$")
    set(name ${CMAKE_MATCH_1})
  endif()
  set(${out} "${name}" PARENT_SCOPE)
endfunction()

set(modules "")
foreach(target IN LISTS module_targets)
  string(REGEX REPLACE "^actorbus_" "" m ${target})
  list(APPEND modules ${m})
  if(NOT m IN_LIST known_modules)
    fail("module '${m}' is not in the layering of module_graph_test.cmake: "
         "place it there (and in CONTRIBUTING.md)")
  endif()
endforeach()

# -- 1. links -----------------------------------------------------------------

foreach(m IN LISTS modules)
  set(used "")
  foreach(item IN LISTS links_actorbus_${m})
    module_of("${item}" dep)
    if(dep)
      list(APPEND used ${dep})
      if(NOT dep IN_LIST below_${m})
        list(JOIN below_${m} ", " may_use)
        fail("actorbus_${m} links actorbus::${dep}, which is not below it "
             "(${m} may use: ${may_use})")
      endif()
    endif()
  endforeach()
  set(links_of_${m} ${used})
  list(JOIN used ", " shown_${m})
  # Private links of a static library show as $<LINK_ONLY:...>.
  foreach(item IN LISTS public_actorbus_${m})
    if(item MATCHES "Boost|HIREDIS|hiredis" AND NOT item MATCHES "^\\$<LINK_ONLY:")
      fail("actorbus_${m} links ${item} publicly, it must stay private")
    endif()
  endforeach()
endforeach()

if("actors" IN_LIST modules AND NOT links_of_actors STREQUAL "runtime")
  fail("actorbus_actors must link exactly actorbus::runtime, links: ${shown_actors}")
endif()
if("bus" IN_LIST modules AND NOT links_of_bus STREQUAL "runtime")
  fail("actorbus_bus must link exactly actorbus::runtime, links: ${shown_bus}")
endif()
foreach(dep actors bus)
  if(NOT dep IN_LIST links_of_pipeline)
    fail("actorbus_pipeline must link actorbus::${dep}, links: ${shown_pipeline}")
  endif()
endforeach()
foreach(m IN LISTS modules)
  set(found FALSE)
  foreach(item IN LISTS links_actorbus)
    module_of("${item}" dep)
    if(dep STREQUAL m)
      set(found TRUE)
    endif()
  endforeach()
  if(NOT found)
    fail("actorbus::actorbus does not link actorbus::${m}")
  endif()
endforeach()

# -- 2. includes and 3. private dependencies in headers ------------------------

foreach(m IN LISTS modules)
  set(dir ${dir_actorbus_${m}})
  file(GLOB_RECURSE files ${dir}/include/*.hpp ${dir}/src/*.hpp ${dir}/src/*.cpp)
  foreach(file IN LISTS files)
    file(RELATIVE_PATH rel ${SOURCE} ${file})
    file(STRINGS ${file} includes REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]")
    foreach(line IN LISTS includes)
      if(line MATCHES "[<\"]actorbus/([a-z_]+)[/.]")
        set(dep ${CMAKE_MATCH_1})
        if(NOT dep STREQUAL m AND NOT dep IN_LIST below_${m})
          fail("${rel} includes a header of ${dep}, which is not below ${m}: ${line}")
        endif()
      endif()
      if(rel MATCHES "/include/" AND line MATCHES "boost/interprocess|hiredis")
        fail("public header ${rel} names a private dependency: ${line}")
      endif()
    endforeach()
  endforeach()
endforeach()

# -- 4. fwd.hpp and umbrella headers -------------------------------------------

# The headers `file` includes as "actorbus/...".
function(included_headers file out)
  set(names "")
  if(EXISTS ${file})
    file(STRINGS ${file} lines REGEX "^#include [<\"]actorbus/")
    foreach(line IN LISTS lines)
      if(line MATCHES "[<\"](actorbus/[^>\"]+)[>\"]")
        list(APPEND names ${CMAKE_MATCH_1})
      endif()
    endforeach()
  endif()
  set(${out} "${names}" PARENT_SCOPE)
endfunction()

foreach(m IN LISTS modules)
  set(inc ${dir_actorbus_${m}}/include/actorbus)
  if(NOT EXISTS ${inc}/${m}/fwd.hpp)
    fail("module ${m} has no include/actorbus/${m}/fwd.hpp")
  endif()
  if(NOT EXISTS ${inc}/${m}.hpp)
    fail("module ${m} has no umbrella header include/actorbus/${m}.hpp")
  endif()
  included_headers(${inc}/${m}.hpp umbrella)
  file(GLOB headers RELATIVE ${inc}/.. ${inc}/${m}/*.hpp)
  foreach(h IN LISTS headers)
    if(NOT h IN_LIST umbrella)
      fail("actorbus/${m}.hpp does not include ${h}")
    endif()
  endforeach()
endforeach()
included_headers(${SOURCE}/include/actorbus/all.hpp everything)
foreach(m IN LISTS modules)
  if(NOT "actorbus/${m}.hpp" IN_LIST everything)
    fail("actorbus/all.hpp does not include actorbus/${m}.hpp")
  endif()
endforeach()

if(failures)
  list(LENGTH failures n)
  foreach(f IN LISTS failures)
    message("module graph: ${f}")
  endforeach()
  message(FATAL_ERROR "module graph: ${n} violation(s)")
endif()
list(JOIN modules ", " names)
message("module graph: ok (${names})")
