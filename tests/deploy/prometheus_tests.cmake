# Tests of deploy/prometheus/ and deploy/grafana/ (included from tests/metrics/CMakeLists.txt,
# which builds the stand-in workers they share):
#   prometheus_config_check   promtool check config deploy/prometheus/prometheus.yml (and its rules)
#   prometheus_rules_check    promtool check rules on every rule file
#   prometheus_rules_unit     promtool test rules deploy/prometheus/tests/*.yml (each alert fires and stays silent)
#   test_prometheus_e2e       (gtest) a real Prometheus (scripts/prometheus_local.sh) scraping a real
#                             short `keel train` run with an injected LR spike, and a real
#                             keel-coordinator fed by stand-in workers: series arrive, the loss-spike
#                             and rollback alerts fire, and every Grafana dashboard query returns data
# Without promtool / prometheus (Debian's prometheus package; scripts/setup.sh installs it) the
# promtool tests report SKIPPED and the end-to-end test skips itself.
set(keel_prometheus_dir ${PROJECT_SOURCE_DIR}/deploy/prometheus)
file(GLOB keel_prometheus_rule_files ${keel_prometheus_dir}/rules/*.yml)
file(GLOB keel_prometheus_rule_tests ${keel_prometheus_dir}/tests/*.yml)

find_program(KEEL_PROMTOOL promtool)
find_program(KEEL_PROMETHEUS prometheus)
if(KEEL_PROMTOOL)
  add_test(NAME prometheus_config_check COMMAND ${KEEL_PROMTOOL} check config ${keel_prometheus_dir}/prometheus.yml)
  add_test(NAME prometheus_rules_check COMMAND ${KEEL_PROMTOOL} check rules ${keel_prometheus_rule_files})
  add_test(NAME prometheus_rules_unit COMMAND ${KEEL_PROMTOOL} test rules ${keel_prometheus_rule_tests}
           WORKING_DIRECTORY ${keel_prometheus_dir})
else()
  foreach(name prometheus_config_check prometheus_rules_check prometheus_rules_unit)
    add_test(NAME ${name} COMMAND bash -c "echo 'promtool not installed (Debian package prometheus)'; exit 77")
    set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77)
  endforeach()
endif()
set_tests_properties(prometheus_config_check prometheus_rules_check prometheus_rules_unit PROPERTIES
  TIMEOUT 60 LABELS prometheus)

set(keel_prometheus_path "")
if(KEEL_PROMETHEUS)
  set(keel_prometheus_path ${KEEL_PROMETHEUS})
endif()
keel_add_test(test_prometheus_e2e
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/prometheus_e2e_test.cpp ${CMAKE_CURRENT_LIST_DIR}/prometheus_dashboard_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/prometheus_api.cpp
  LIBS keel_metrics_test_support nlohmann_json::nlohmann_json FIXTURES keel_dataset)
target_compile_definitions(test_prometheus_e2e PRIVATE KEEL_COORDINATOR_BIN="$<TARGET_FILE:keel-coordinator>"
                           KEEL_PROMETHEUS="${keel_prometheus_path}")
add_dependencies(test_prometheus_e2e keel keel-coordinator)
target_compile_options(test_prometheus_e2e PRIVATE ${KEEL_WARNINGS})
