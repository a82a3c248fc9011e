# cc_service(NAME SOURCES...): a service binary linked with libcommon, with
# the project's warnings. The binary is named after the service.
function(cc_add_service name)
  add_executable(${name} ${ARGN})
  target_compile_options(${name} PRIVATE ${CC_WARNINGS})
  target_link_libraries(${name} PRIVATE cc_common)
endfunction()

# cc_add_test_program(NAME SOURCES...): a test binary with the harness.
function(cc_add_test_program name)
  add_executable(${name} ${ARGN})
  target_compile_options(${name} PRIVATE ${CC_WARNINGS})
  target_link_libraries(${name} PRIVATE cc_harness cc_common)
endfunction()
